package cli

import (
	"encoding/json"
	"fmt"
	"os"

	"strait.dev/strait/test/sandbox/node"
)

func readNodeConfig(path string) (node.Config, error) {
	var cfg node.Config
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("read %s: %w", path, err)
	}
	return cfg, nil
}
