"""One module per data source kind, each defining ``KIND`` (see ``cnnspec.data.registry``)."""
