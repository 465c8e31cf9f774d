package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// EncodeDynamic is the JSON to store in etcd's config key for c, keeping
// what prev (the key's current value) holds under keys pgha does not
// know, at any depth (a Patroni cluster's postgresql.pg_hba,
// check_timeline, ...): tools that edit the key must not drop what
// Patroni, or a newer pgha, put there. Known keys take c's values; a
// known key c leaves out (omitempty) is removed.
func EncodeDynamic(prev []byte, c DynamicConfig) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: encode the dynamic config: %w", err)
	}
	if len(prev) == 0 {
		return b, nil
	}
	var old map[string]any
	if json.Unmarshal(prev, &old) != nil || old == nil {
		return b, nil // nothing readable to keep
	}
	var next map[string]any
	if err := json.Unmarshal(b, &next); err != nil {
		return nil, err
	}
	keepUnknown(old, next, reflect.TypeOf(c))
	return json.Marshal(next)
}

// keepUnknown copies into next the entries of old whose keys are not
// fields of struct type t, recursing into known fields that are structs.
func keepUnknown(old, next map[string]any, t reflect.Type) {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	for k, v := range old {
		ft, known := fields[k]
		if !known {
			next[k] = v
			continue
		}
		if ft.Kind() != reflect.Struct {
			continue
		}
		ov, ok1 := v.(map[string]any)
		nv, ok2 := next[k].(map[string]any)
		if ok1 && ok2 {
			keepUnknown(ov, nv, ft)
		}
	}
}
