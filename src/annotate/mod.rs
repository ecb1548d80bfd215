//! Drawing detections onto frames.
