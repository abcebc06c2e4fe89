"""Settings records at the bottom of the house: a position in the file (:mod:`.source`) and each section's
parsed, frozen settings (models, memory, embeddings). Providers, memory, embeddings and templates import these
and nothing above them."""
