# data/: file contract and validation, order and rank slices, loader, importers, tools.
sp_test(data_read TIMEOUT 60)
sp_test(data_loader TIMEOUT 60)
sp_test(data_tools TIMEOUT 120)
