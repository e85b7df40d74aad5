"""Training methods: LP (linear probe), FT / LoRA fine-tuning loop, LoRA wrapping, and the run configuration."""
