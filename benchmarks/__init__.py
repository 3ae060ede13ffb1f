"""`playground bench NAME`: every benchmark, each measured against a baseline taken in the same run."""
