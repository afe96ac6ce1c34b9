"""Channel groups: which neurons of a program are cut together, and which are frozen."""
