"""thaw's benchmarks: ratios measured in one run on this machine (`make bench`)."""
