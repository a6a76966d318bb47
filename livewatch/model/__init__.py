"""Video to tensor, model artifacts and the classifiers that run the I3D model."""
