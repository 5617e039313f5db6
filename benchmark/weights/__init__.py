"""Clean models clipbench ships: safetensors weights with their JSON manifests (:mod:`clipbench.shipped`)."""
