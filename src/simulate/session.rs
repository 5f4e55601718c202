//! A believable AutoPi session, the same for the same seed: power on,
//! cranking, a drive around Aalborg, engine off, sleep, hours parked, and
//! again. Records come out in time order as the device would send them.

use std::collections::VecDeque;

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

/// Where every drive starts and ends (Aalborg).
pub const HOME: (f64, f64) = (57.02241, 9.89919);
/// First power-on of seed 0; later seeds start a day later each.
const BASE_START_SECS: i64 = 1_795_766_400; // 2026-11-27T08:00:00Z
const METERS_PER_DEG_LAT: f64 = 111_320.0;
/// Leaving or reaching this circle around HOME is a geofence event.
const HOME_RADIUS_M: f64 = 250.0;
/// km/h gained or lost in one second at most (about 0.2 g and 0.3 g).
const MAX_ACCEL: f64 = 7.0;
const MAX_DECEL: f64 = 10.5;
/// Lowest speed while still short of a stop: real cars do not creep
/// forever, they roll the last metres.
const CREEP_KMH: f64 = 6.0;

const DTCS: &[(&str, &str)] = &[
    ("P0300", "Random/Multiple Cylinder Misfire Detected"),
    ("P0171", "System Too Lean (Bank 1)"),
    (
        "P0420",
        "Catalyst System Efficiency Below Threshold (Bank 1)",
    ),
    (
        "P0128",
        "Coolant Thermostat (Coolant Temperature Below Thermostat Regulating Temperature)",
    ),
    (
        "P0442",
        "Evaporative Emission Control System Leak Detected (small leak)",
    ),
];
const SERVICES: &[&str] = &["obd_manager", "acc_manager", "ec2x_manager"];

/// How `@ts` is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stamps {
    /// Naive UTC, as the device's code writes: `2026-11-27T08:00:03.158955`.
    Naive,
    /// UTC with a `Z`, as the guide's examples show.
    Zulu,
}

/// `HH:MM:SS` of a stamp `format_ts` wrote: what follows its `T`, where
/// a year before -999 (`-1000-…`) is longer than four characters (taken from
/// byte 11 on, such a fix's `utc` was `T02:00:4`, a review).
fn time_of_day(stamp: &str) -> &str {
    stamp
        .split_once('T')
        .map_or("", |(_, time)| time.get(..8).unwrap_or(time))
}

/// `@ts` for a time in microseconds since the epoch; no fraction when the
/// microseconds are 0, like Python's `isoformat()`.
pub fn format_ts(micros: i64, stamps: Stamps) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let base = match Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        Err(_) => "1970-01-01T00:00:00".to_string(),
    };
    let zone = match stamps {
        Stamps::Naive => "",
        Stamps::Zulu => "Z",
    };
    if frac == 0 {
        format!("{base}{zone}")
    } else {
        format!("{base}.{frac:06}{zone}")
    }
}

/// The first power-on of a seed when no start time is given.
pub fn default_start(seed: u64) -> Timestamp {
    let day = (seed % 3650) as i64;
    Timestamp::from_second(BASE_START_SECS + day * 86_400).expect("within jiff's range")
}

/// An endless, deterministic stream of records.
pub struct Session {
    rng: ChaCha8Rng,
    stamps: Stamps,
    /// Time of the last record (µs since the epoch); only moves forward.
    cursor: i64,
    /// The current whole second of the simulation (µs since the epoch).
    second: i64,
    out: VecDeque<Value>,
    car: Car,
    power_cycles: u64,
}

/// Everything the sensors read.
struct Car {
    lat: f64,
    lon: f64,
    alt: f64,
    /// km/h
    speed: f64,
    course: f64,
    nsat: i64,
    odometer_m: f64,
    voltage: f64,
    /// Charge in %, steps of 10, as read at rest before cranking.
    level: i64,
    engine_on: bool,
    coolant: f64,
    ambient: f64,
    fuel: f64,
    cpu: f64,
    sent: u64,
    recv: u64,
    /// Seconds since power on.
    up: u64,
    /// Seconds the car has stood still in a row.
    still: u32,
    moving: bool,
    at_home: bool,
    accel_ms2: f64,
    turn_deg: f64,
}

/// One stretch of road to a waypoint.
struct Leg {
    to: (f64, f64),
    cruise: f64,
    /// km/h when passing the waypoint (0: stop there).
    end_speed: f64,
    /// Seconds standing at the waypoint (a red light).
    wait: u32,
}

/// What else happens in a drive, and when (seconds into it); each fires
/// once, at the latest when the drive ends.
struct Incidents {
    dtc_at: Option<u64>,
    service_failure_at: Option<u64>,
}

impl Session {
    pub fn new(seed: u64, start: Timestamp, stamps: Stamps) -> Session {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start_us = start.as_microsecond();
        let car = Car {
            lat: HOME.0,
            lon: HOME.1,
            alt: rng.random_range(12.0..20.0),
            speed: 0.0,
            course: rng.random_range(0.0..360.0),
            nsat: rng.random_range(8..12),
            odometer_m: 0.0,
            voltage: 12.6,
            level: 100,
            engine_on: false,
            ambient: rng.random_range(2.0..9.0),
            coolant: 0.0,
            fuel: rng.random_range(35.0..90.0),
            cpu: 40.0,
            sent: 0,
            recv: 0,
            up: 0,
            still: 0,
            moving: false,
            at_home: true,
            accel_ms2: 0.0,
            turn_deg: 0.0,
        };
        let mut session = Session {
            rng,
            stamps,
            cursor: start_us - 1,
            second: start_us,
            out: VecDeque::new(),
            car,
            power_cycles: 0,
        };
        session.car.coolant = session.car.ambient;
        session
    }

    /// Appends one power cycle: on, crank, drive, off, sleep, parked.
    fn power_cycle(&mut self) {
        self.power_on();
        self.crank();
        let idle = self.rng.random_range(8..20);
        self.stand(idle);
        let mut incidents = self.plan_incidents();
        let legs = self.plan_route();
        let drive_start = self.car.up;
        for leg in &legs {
            self.drive_leg(leg, drive_start, &mut incidents);
        }
        self.incidents(u64::MAX, &mut incidents);
        let idle = self.rng.random_range(6..15);
        self.stand(idle);
        self.engine_off();
        self.sleep_and_park();
        self.power_cycles += 1;
    }

    fn plan_incidents(&mut self) -> Incidents {
        // The first drive shows everything; later ones only now and then.
        let first = self.power_cycles == 0;
        let dtc = first || self.rng.random_bool(0.3);
        let service = first || self.rng.random_bool(0.1);
        Incidents {
            dtc_at: dtc.then(|| self.rng.random_range(60..300)),
            service_failure_at: service.then(|| self.rng.random_range(30..240)),
        }
    }

    /// A loop out of town and back: waypoints on a petal around HOME.
    fn plan_route(&mut self) -> Vec<Leg> {
        let points = self.rng.random_range(5..9);
        let reach = self.rng.random_range(1800.0..4200.0);
        let heading = self.rng.random_range(0.0..360.0_f64);
        let mut legs = Vec::new();
        for i in 1..points {
            let frac = i as f64 / points as f64;
            let bearing = heading + 150.0 * frac;
            let r = reach * (std::f64::consts::PI * frac).sin() * self.rng.random_range(0.8..1.2);
            let red = self.rng.random_bool(0.35);
            legs.push(Leg {
                to: offset(HOME, bearing, r),
                cruise: (self.rng.random_range(35.0..80.0_f64) / 5.0).round() * 5.0,
                end_speed: if red {
                    0.0
                } else {
                    self.rng.random_range(15.0..30.0)
                },
                wait: if red {
                    self.rng.random_range(12..45)
                } else {
                    0
                },
            });
        }
        legs.push(Leg {
            to: HOME,
            cruise: 40.0,
            end_speed: 0.0,
            wait: 0,
        });
        legs
    }

    fn power_on(&mut self) {
        self.car.up = 0;
        // The modem restarts with the device: its counters start over.
        self.car.sent = 0;
        self.car.recv = 0;
        self.car.voltage = self.rng.random_range(12.45..12.75);
        self.car.level = rest_level(self.car.voltage);
        self.event(
            "system/power/on",
            json!({"trigger": "stn", "awaken": "sleeping"}),
        );
        self.next_second();
        self.event("system/minion/online", json!({}));
        self.battery("discharging");
        self.event("vehicle/engine/not_running", json!({}));
        self.position();
        self.rpi_temp();
        self.data_usage();
        self.next_second();
    }

    fn crank(&mut self) {
        self.event("vehicle/motion/shaking", json!({}));
        self.car.voltage = self.rng.random_range(10.35..10.7);
        self.battery("discharging");
        self.next_second();
        self.car.engine_on = true;
        self.event("vehicle/engine/running", json!({}));
        let flare = self.rng.random_range(1100.0..1350.0);
        self.emit(
            "obd.rpm",
            json!({"value": round(flare, 1), "unit": "revolutions_per_minute"}),
        );
        self.car.voltage = self.rng.random_range(14.1..14.4);
        self.battery("charging");
        self.event("vehicle/battery/charging", json!({}));
        self.next_second();
        self.event("vehicle/motion/steady", json!({}));
    }

    /// Seconds standing with the engine as it is.
    fn stand(&mut self, seconds: u32) {
        for _ in 0..seconds {
            self.step(0.0, None);
        }
    }

    fn drive_leg(&mut self, leg: &Leg, drive_start: u64, incidents: &mut Incidents) {
        loop {
            let dist = distance_m((self.car.lat, self.car.lon), leg.to);
            if dist < 1.0 {
                break;
            }
            let braking = braking_limit(leg.end_speed, dist);
            let desired = leg.cruise.min(braking).max(CREEP_KMH);
            self.step(desired, Some(leg.to));
            self.incidents(self.car.up - drive_start, incidents);
        }
        if leg.end_speed == 0.0 {
            self.car.speed = 0.0;
            self.stand(leg.wait);
        }
    }

    fn incidents(&mut self, into_drive: u64, incidents: &mut Incidents) {
        if incidents.dtc_at.is_some_and(|at| into_drive >= at) {
            incidents.dtc_at = None;
            let (code, text) = DTCS[self.rng.random_range(0..DTCS.len())];
            self.emit("obd.dtc", json!({"code": code, "text": text}));
        }
        if incidents
            .service_failure_at
            .is_some_and(|at| into_drive >= at)
        {
            incidents.service_failure_at = None;
            let name = SERVICES[self.rng.random_range(0..SERVICES.len())];
            self.event(&format!("system/service/{name}/failed"), json!({}));
        }
    }

    /// One second of the car's life: move toward `toward` aiming at
    /// `desired` km/h, then let the sensors report.
    fn step(&mut self, desired: f64, toward: Option<(f64, f64)>) {
        let before = self.car.speed;
        let change = (desired - before).clamp(-MAX_DECEL, MAX_ACCEL);
        let speed = (before + change * self.rng.random_range(0.85..1.0)).max(0.0);
        self.car.turn_deg = 0.0;
        if let Some(to) = toward {
            let here = (self.car.lat, self.car.lon);
            let dist = distance_m(here, to);
            let course = bearing_deg(here, to);
            let meters = speed / 3.6;
            let (lat, lon) = if meters >= dist {
                to
            } else {
                offset(here, course, meters)
            };
            self.car.turn_deg = angle_diff(self.car.course, course);
            self.car.course = course;
            self.car.lat = lat;
            self.car.lon = lon;
            self.car.odometer_m += meters.min(dist);
        }
        self.car.accel_ms2 = (speed - before) / 3.6;
        self.car.speed = speed;
        self.next_second();
        self.sensors();
    }

    /// What the device reports in one second, each on its own schedule.
    fn sensors(&mut self) {
        self.update_engine_and_body();
        let up = self.car.up;
        let moving = self.car.speed > 0.5;
        if moving || up.is_multiple_of(10) {
            self.position();
        }
        self.movement_events();
        if self.car.engine_on {
            self.engine_readings(up);
        }
        self.accelerometer();
        if up.is_multiple_of(10) {
            let state = if self.car.engine_on {
                "charging"
            } else {
                "discharging"
            };
            self.battery(state);
        }
        if up.is_multiple_of(15) {
            self.data_usage();
        }
        if up.is_multiple_of(30) {
            self.rpi_temp();
        }
    }

    fn update_engine_and_body(&mut self) {
        let car = &mut self.car;
        if car.engine_on {
            car.coolant += (91.0 - car.coolant) * 0.0065 + self.rng.random_range(-0.05..0.05);
            let drift = (14.25 - car.voltage) * 0.1 + self.rng.random_range(-0.05..0.05);
            car.voltage = (car.voltage + drift).clamp(14.1, 14.4);
            car.fuel = (car.fuel - 0.004 - car.speed * 0.0001).max(3.0);
        }
        car.cpu += (58.0 - car.cpu) * 0.003;
        car.alt = 5.0
            + 25.0 * (0.5 + 0.5 * (car.odometer_m / 1800.0).sin())
            + self.rng.random_range(-1.0..1.0);
        if self.rng.random_bool(0.1) {
            car.nsat = (car.nsat + self.rng.random_range(-1..=1)).clamp(6, 14);
        }
    }

    fn engine_readings(&mut self, up: u64) {
        let car = &self.car;
        let rpm = rpm_for(car.speed, car.accel_ms2) + self.rng.random_range(-15.0..15.0);
        let load = if car.speed < 3.0 {
            self.rng.random_range(17.0..23.0)
        } else {
            (22.0 + car.speed * 0.25 + car.accel_ms2 * 18.0).clamp(8.0, 95.0)
                + self.rng.random_range(-2.0..2.0)
        };
        let (speed, coolant, fuel) = (car.speed.round(), car.coolant, car.fuel);
        let (ambient, intake) = (car.ambient, car.ambient + 6.0 + coolant / 12.0);
        self.emit("obd.speed", json!({"value": speed as i64, "unit": "kph"}));
        self.emit(
            "obd.rpm",
            json!({"value": round(rpm, 1), "unit": "revolutions_per_minute"}),
        );
        if up.is_multiple_of(2) {
            self.emit(
                "obd.engine_load",
                json!({"value": round(load, 1), "unit": "percent"}),
            );
        }
        if up.is_multiple_of(5) {
            self.emit(
                "obd.coolant_temp",
                json!({"value": coolant.round() as i64, "unit": "degC"}),
            );
        }
        if up.is_multiple_of(60) {
            self.emit(
                "obd.fuel_level",
                json!({"value": round(fuel, 1), "unit": "percent"}),
            );
            self.emit(
                "obd.intake_temp",
                json!({"value": intake.round() as i64, "unit": "degC"}),
            );
            self.emit(
                "obd.ambiant_air_temp",
                json!({"value": ambient.round() as i64, "unit": "degC"}),
            );
        }
    }

    /// Standstill/moving, geofence, and jolts, each when its state changes.
    fn movement_events(&mut self) {
        let car = &mut self.car;
        car.still = if car.speed < 1.0 { car.still + 1 } else { 0 };
        let mut tags = Vec::new();
        if car.moving && car.still >= 3 {
            car.moving = false;
            tags.push("vehicle/position/standstill");
        } else if !car.moving && car.speed > 5.0 {
            car.moving = true;
            tags.push("vehicle/position/moving");
        }
        let home = distance_m((car.lat, car.lon), HOME) < HOME_RADIUS_M;
        if home != car.at_home {
            car.at_home = home;
            tags.push(if home {
                "vehicle/geofence/home/enter"
            } else {
                "vehicle/geofence/home/exit"
            });
        }
        // Most hard stops go unnoticed; now and then one jolts the sensor.
        if car.accel_ms2 < -2.6 && self.rng.random_bool(0.3) {
            tags.push("vehicle/motion/jolting");
        }
        for tag in tags {
            self.event(tag, json!({}));
        }
    }

    fn engine_off(&mut self) {
        self.car.engine_on = false;
        self.event("vehicle/engine/stopped", json!({}));
        self.emit(
            "obd.rpm",
            json!({"value": 0, "unit": "revolutions_per_minute"}),
        );
        self.next_second();
        self.car.voltage = self.rng.random_range(12.6..12.85);
        self.car.level = rest_level(self.car.voltage);
        self.battery("discharging");
        self.event("vehicle/battery/discharging", json!({}));
        let settle = self.rng.random_range(20..40);
        self.stand(settle);
        self.position();
        self.data_usage();
    }

    fn sleep_and_park(&mut self) {
        self.event("system/minion/offline", json!({}));
        let uptime = self.car.up;
        self.event(
            "system/power/sleep",
            json!({"reason": "engine_stopped", "delay": 60, "interval": 86400, "uptime": uptime}),
        );
        let parked_s = self.rng.random_range(2 * 3600..14 * 3600);
        self.second += parked_s * 1_000_000;
        let car = &mut self.car;
        let cooling = (-(parked_s as f64) / 7200.0).exp();
        car.coolant = car.ambient + (car.coolant - car.ambient) * cooling;
        car.cpu = 38.0 + self.rng.random_range(0.0..6.0);
        car.course = self.rng.random_range(0.0..360.0);
    }

    fn next_second(&mut self) {
        self.second += 1_000_000;
        self.car.up += 1;
    }

    fn position(&mut self) {
        let car = &self.car;
        let utc = time_of_day(&format_ts(self.second, Stamps::Naive)).to_string();
        let fields = json!({
            "loc": {"lat": round(car.lat, 6), "lon": round(car.lon, 6)},
            "alt": round(car.alt, 1),
            "sog": round(car.speed, 1),
            "cog": round(car.course, 2),
            "nsat": car.nsat,
            "utc": utc,
        });
        self.emit("track.pos", fields);
    }

    fn battery(&mut self, state: &str) {
        let v = self.car.voltage;
        let level = if state == "charging" {
            100
        } else {
            self.car.level
        };
        self.emit(
            "obd.bat",
            json!({"voltage": round(v, 2), "level": level, "state": state}),
        );
    }

    fn accelerometer(&mut self) {
        let car = &self.car;
        let lateral = (car.speed / 3.6) * car.turn_deg.to_radians() / 9.81;
        let x = car.accel_ms2 / 9.81 + self.rng.random_range(-0.02..0.02);
        let y = lateral.clamp(-0.6, 0.6) + self.rng.random_range(-0.02..0.02);
        let z = 1.0 + self.rng.random_range(-0.03..0.03);
        self.emit(
            "acc.xyz",
            json!({"x": round(x, 4), "y": round(y, 4), "z": round(z, 4)}),
        );
    }

    fn data_usage(&mut self) {
        self.car.sent += self.rng.random_range(300..3000);
        self.car.recv += self.rng.random_range(600..9000);
        let (sent, recv) = (self.car.sent, self.car.recv);
        self.emit("ec2x.data_usage", json!({"sent": sent, "recv": recv}));
    }

    fn rpi_temp(&mut self) {
        let cpu = self.car.cpu + self.rng.random_range(-0.8..0.8);
        let gpu = cpu + self.rng.random_range(1.0..2.5);
        self.emit(
            "rpi.temp",
            json!({
                "cpu": {"value": round(cpu, 1), "unit": "C"},
                "gpu": {"value": round(gpu, 1), "unit": "C"},
            }),
        );
    }

    /// `event.<tag minus its last part, with dots>` with `@tag`.
    fn event(&mut self, tag: &str, fields: Value) {
        let kind = match tag.rsplit_once('/') {
            Some((head, _)) => format!("event.{}", head.replace('/', ".")),
            None => format!("event.{tag}"),
        };
        let mut fields = fields;
        if let Value::Object(map) = &mut fields {
            map.insert("@tag".into(), Value::String(tag.into()));
        }
        self.emit(&kind, fields);
    }

    /// Stamps a record a few milliseconds after the one before it.
    fn emit(&mut self, kind: &str, fields: Value) {
        let gap = self.rng.random_range(2_000..60_000);
        self.cursor = (self.cursor + gap).max(self.second + gap);
        let mut record = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        record.insert("@t".into(), Value::String(kind.into()));
        record.insert(
            "@ts".into(),
            Value::String(format_ts(self.cursor, self.stamps)),
        );
        self.out.push_back(Value::Object(record));
    }
}

impl Iterator for Session {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        while self.out.is_empty() {
            self.power_cycle();
        }
        self.out.pop_front()
    }
}

/// Highest speed (km/h) from which the car still slows to `end` within
/// `dist` metres at a comfortable 2.2 m/s².
fn braking_limit(end_kmh: f64, dist_m: f64) -> f64 {
    let end = end_kmh / 3.6;
    (end * end + 2.0 * 2.2 * dist_m).sqrt() * 3.6
}

/// Engine speed for a road speed: a five-gear box, idle below walking pace.
fn rpm_for(kmh: f64, accel_ms2: f64) -> f64 {
    const SHIFT_AT: [f64; 4] = [15.0, 30.0, 45.0, 62.0];
    const RPM_PER_KMH: [f64; 5] = [115.0, 62.0, 43.0, 33.0, 27.0];
    if kmh < 3.0 {
        return 800.0;
    }
    let gear = SHIFT_AT.iter().filter(|&&s| kmh >= s).count();
    (kmh * RPM_PER_KMH[gear] + accel_ms2.max(0.0) * 150.0).max(850.0)
}

/// State of charge from the resting voltage (11.8 V empty, 12.7 V full).
fn rest_level(volts: f64) -> i64 {
    ((((volts - 11.8) / 0.9) * 10.0).round() as i64 * 10).clamp(0, 100)
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// Flat-earth distance: exact enough over a few kilometres.
fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let dy = (b.0 - a.0) * METERS_PER_DEG_LAT;
    let dx = (b.1 - a.1) * METERS_PER_DEG_LAT * a.0.to_radians().cos();
    dx.hypot(dy)
}

/// Course over ground from `a` to `b`, degrees clockwise from north.
fn bearing_deg(a: (f64, f64), b: (f64, f64)) -> f64 {
    let dy = b.0 - a.0;
    let dx = (b.1 - a.1) * a.0.to_radians().cos();
    dx.atan2(dy).to_degrees().rem_euclid(360.0)
}

fn offset(from: (f64, f64), bearing: f64, meters: f64) -> (f64, f64) {
    let rad = bearing.to_radians();
    let dlat = meters * rad.cos() / METERS_PER_DEG_LAT;
    let dlon = meters * rad.sin() / (METERS_PER_DEG_LAT * from.0.to_radians().cos());
    (from.0 + dlat, from.1 + dlon)
}

/// Signed smallest turn from course `a` to course `b`, degrees.
fn angle_diff(a: f64, b: f64) -> f64 {
    (b - a + 540.0).rem_euclid(360.0) - 180.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_drop_a_zero_fraction_like_the_device() {
        let t = 1_795_766_403_158_955;
        assert_eq!(format_ts(t, Stamps::Naive), "2026-11-27T08:00:03.158955");
        assert_eq!(format_ts(t, Stamps::Zulu), "2026-11-27T08:00:03.158955Z");
        assert_eq!(
            format_ts(1_795_766_403_000_000, Stamps::Naive),
            "2026-11-27T08:00:03"
        );
        assert_eq!(
            format_ts(1_795_766_403_000_007, Stamps::Naive),
            "2026-11-27T08:00:03.000007"
        );
        // A fix's `utc` is the time of day, also before year -999.
        let before_0 = "-001000-01-01T01:01:01.5Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_microsecond();
        let stamp = format_ts(before_0, Stamps::Naive);
        assert_eq!(stamp, "-1000-01-01T01:01:01.500000");
        assert_eq!(time_of_day(&format_ts(before_0, Stamps::Naive)), "01:01:01");
        assert_eq!(time_of_day(&format_ts(t, Stamps::Naive)), "08:00:03");
    }

    #[test]
    fn courses_point_where_the_car_goes() {
        let north = offset(HOME, 0.0, 1000.0);
        let east = offset(HOME, 90.0, 1000.0);
        assert!((bearing_deg(HOME, north) - 0.0).abs() < 0.01);
        assert!((bearing_deg(HOME, east) - 90.0).abs() < 0.01);
        assert!((distance_m(HOME, east) - 1000.0).abs() < 1.0);
        assert_eq!(angle_diff(350.0, 10.0), 20.0);
        assert_eq!(angle_diff(10.0, 350.0), -20.0);
    }

    #[test]
    fn rpm_rises_with_speed_within_a_gear_and_idles_when_still() {
        assert_eq!(rpm_for(0.0, 0.0), 800.0);
        assert!(rpm_for(40.0, 0.0) > rpm_for(32.0, 0.0));
        assert!((1000.0..3500.0).contains(&rpm_for(50.0, 0.0)));
    }
}
