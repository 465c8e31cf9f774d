package convert

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/pgha/pgha/config"
)

// PoolerSection is the `pooler:` section of a node config for p.
func PoolerSection(p config.Pooler) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# pgha pooler section converted from a PgBouncer configuration by pgha convert.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]config.Pooler{"pooler": p}); err != nil {
		return nil, fmt.Errorf("convert: write the pooler section: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("convert: write the pooler section: %w", err)
	}
	return buf.Bytes(), nil
}

// WithPooler replaces the pooler section of the node config doc with p,
// keeping the rest (and its comments) as it is.
func WithPooler(doc []byte, p config.Pooler) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("convert: read the converted config: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("convert: the converted config is not a mapping")
	}
	var val yaml.Node
	if err := val.Encode(p); err != nil {
		return nil, fmt.Errorf("convert: encode the pooler section: %w", err)
	}
	m := root.Content[0]
	replaced := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "pooler" {
			m.Content[i+1] = &val
			replaced = true
		}
	}
	if !replaced {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "pooler"}, &val)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("convert: write YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("convert: write YAML: %w", err)
	}
	return buf.Bytes(), nil
}
