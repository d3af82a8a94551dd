"""The benchmark's estimators (scikit-learn contract) and the deep models' training loop."""
