"""One member on one tomogram: resample, TTA, sliding windows, stitching, peaks -> candidate points."""
