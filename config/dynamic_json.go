package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
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

// MergePatch applies a Patroni config patch to doc in place: nested
// objects merge, null deletes a key, anything else replaces. It reports
// whether doc changed.
func MergePatch(doc, patch map[string]any) bool {
	changed := false
	for k, pv := range patch {
		cur, had := doc[k]
		switch pv := pv.(type) {
		case nil:
			if had {
				delete(doc, k)
				changed = true
			}
		case map[string]any:
			cm, ok := cur.(map[string]any)
			if !ok {
				cm = map[string]any{}
				if had && cur != nil {
					changed = true
				}
			}
			if MergePatch(cm, pv) || !had {
				changed = true
			}
			doc[k] = cm
		default:
			if !had || !jsonEqual(cur, pv) {
				doc[k] = pv
				changed = true
			}
		}
	}
	return changed
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// DynamicToMap renders a dynamic configuration as its JSON object.
func DynamicToMap(d DynamicConfig) (map[string]any, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("config: encode dynamic config: %w", err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config: decode dynamic config: %w", err)
	}
	return m, nil
}

// DecodeDynamicMap turns a config JSON object (a PATCH/PUT body, an
// edited document) into a validated DynamicConfig; keys it leaves out take
// their defaults. Unknown keys and invalid values are errors that name
// the key.
func DecodeDynamicMap(m map[string]any) (DynamicConfig, error) {
	d := DefaultDynamic()
	b, err := json.Marshal(m)
	if err != nil {
		return d, fmt.Errorf("config: %v", err)
	}
	if err := decodeStrict(b, &d); err != nil {
		// A value's own decoder (durations, sizes) does not say which key
		// it was decoding. Keys decode in sorted order (json.Marshal sorts
		// them), so the first key that fails alone is the one to name.
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			one, _ := json.Marshal(map[string]any{k: m[k]})
			scratch := DefaultDynamic()
			if decodeStrict(one, &scratch) != nil {
				if strings.Contains(err.Error(), k) {
					break
				}
				return d, fmt.Errorf("config: %s: %v", k, err)
			}
		}
		return d, fmt.Errorf("config: %v", err)
	}
	if err := d.Validate(); err != nil {
		return d, fmt.Errorf("config: %v", err)
	}
	return d, nil
}

// decodeStrict decodes JSON into v, refusing unknown keys.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
