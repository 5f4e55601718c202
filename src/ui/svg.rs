//! A rendered buffer as an SVG picture, with its colours, for screenshots.
