# Sizes from outside are never trusted: the memory limit and the in-memory entry points.
sp_test(limits TIMEOUT 60)
