package convert

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// omap is an ordered YAML mapping: keys come out in the order they were
// first set, so the converted file reads like testdata/node1.yml.
type omap struct {
	keys    []string
	vals    map[string]any
	comment map[string]string
}

func newOmap() *omap { return &omap{vals: map[string]any{}, comment: map[string]string{}} }

func (o *omap) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// sub returns the nested mapping at k, creating it.
func (o *omap) sub(k string) *omap {
	if m, ok := o.vals[k].(*omap); ok {
		return m
	}
	m := newOmap()
	o.set(k, m)
	return m
}

func (o *omap) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *omap) empty() bool { return len(o.keys) == 0 }

// node renders the mapping, leaving out empty sub-mappings.
func (o *omap) node() (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range o.keys {
		v := o.vals[k]
		var vn *yaml.Node
		switch x := v.(type) {
		case *omap:
			if x.empty() {
				continue
			}
			sub, err := x.node()
			if err != nil {
				return nil, err
			}
			vn = sub
		default:
			vn = &yaml.Node{}
			if err := vn.Encode(v); err != nil {
				return nil, fmt.Errorf("convert: encode %s: %w", k, err)
			}
		}
		kn := &yaml.Node{Kind: yaml.ScalarNode, Value: k, HeadComment: o.comment[k]}
		n.Content = append(n.Content, kn, vn)
	}
	return n, nil
}

// pop removes key from m and returns its value.
func pop(m map[string]any, key string) (any, bool) {
	v, ok := m[key]
	if ok {
		delete(m, key)
	}
	return v, ok
}

// asMap reads a YAML mapping decoded as map[string]any.
func asMap(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	return m, ok
}

// scalar renders a YAML scalar as Patroni's str() would: 30, 0.5, true,
// "text". A nil value is "".
func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// isScalar reports whether v is a string, number or boolean.
func isScalar(v any) bool {
	switch v.(type) {
	case string, int, int64, float64, bool:
		return true
	}
	return false
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// stringList reads a list of strings, or one comma-separated string (as
// Patroni accepts for etcd hosts), stripping spaces and quotes.
func stringList(v any) []string {
	var raw []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			raw = append(raw, scalar(e))
		}
	case nil:
	default:
		raw = strings.Split(scalar(x), ",")
	}
	var out []string
	for _, s := range raw {
		s = strings.Trim(strings.TrimSpace(s), `'"`)
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
