# Scaling beyond one machine (docs/scaling.md): the alpha-beta model, and the SMPI skeleton of
# scripts/scale/ when SimGrid's smpicc is installed (CI installs libsimgrid-dev).
sp_test(costmodel LABELS scale)
