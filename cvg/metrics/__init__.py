"""I3D metrics (FVD, FID, IS), the classifier judge, PSD analysis and metric tables."""
