"""detector: a modern anchor-free object detector (FCOS-style decoding, FPN+PAN, TAL, focal/IoU losses)."""

__version__ = "0.1.0"
