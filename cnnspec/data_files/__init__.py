"""Package data: the keras.applications table (applications.json)."""
