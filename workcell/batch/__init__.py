"""The batch, read from the store: lineage and population doublings, release criteria,
QC results and signatures. Kernel code: it knows the store and nothing above it."""
