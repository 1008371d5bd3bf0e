"""Felix's calculation core: datastore resources in, ordered dataplane messages out (pure)."""
