"""The detector model: timm backbone, FPN+PAN neck, decoupled head (Chapters 2–4)."""

from detector.model.backbone import Backbone
from detector.model.detector import Detector, DetectorOutput, build_detector
from detector.model.head import DecoupledHead
from detector.model.neck import FpnPan

__all__ = ["Backbone", "DecoupledHead", "Detector", "DetectorOutput", "FpnPan", "build_detector"]
