# data/: file contract and validation, order and rank slices, loader, importers, tools; token
# data (windows, labels, loader) and the text importer; --augment against its references.
sp_test(data_read TIMEOUT 60)
sp_test(data_loader TIMEOUT 60)
sp_test(data_tools TIMEOUT 120)
sp_test(data_tokens TIMEOUT 60)
sp_test(data_text TIMEOUT 120)
sp_test(data_augment TIMEOUT 60)
sp_test(data_shards TIMEOUT 60)
sp_test(data_stage TIMEOUT 120)
