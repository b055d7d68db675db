"""`python -m gentool.zoo`: write the torch-free catalog of the families anew (after adding or changing one)."""

from gentool.zoo import CATALOG, write_catalog

write_catalog()
print(CATALOG)
