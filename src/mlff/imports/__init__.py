"""Import models trained by other codes into mlff's own architectures."""
