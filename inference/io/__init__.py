"""Reading tomograms: listing the input, image decoders, MRC, OME-Zarr, spacing and intensity."""
