//! Raw SSD heads: anchor generation, box decoding and class-aware NMS.
