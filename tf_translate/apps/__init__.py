"""What users run on trained models: translate, interpolate, cluster, the REST client."""
