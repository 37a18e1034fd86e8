"""The edge of thaw: the ``thaw`` command line and the local servers it starts.

The top layer: it may import ``flows``, ``tasks`` and ``thaw``; nothing imports it.
"""
