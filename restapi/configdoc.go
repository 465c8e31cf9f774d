package restapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/pgha/pgha/config"
)

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
func DynamicToMap(d config.DynamicConfig) (map[string]any, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("restapi: encode dynamic config: %w", err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("restapi: decode dynamic config: %w", err)
	}
	return m, nil
}

// DecodeDynamic turns a config JSON object into a validated
// DynamicConfig; keys it leaves out take their defaults. Unknown keys and
// invalid values are errors wrapping ErrBadRequest that name the key.
func DecodeDynamic(m map[string]any) (config.DynamicConfig, error) {
	d := config.DefaultDynamic()
	b, err := json.Marshal(m)
	if err != nil {
		return d, fmt.Errorf("%w: config: %v", ErrBadRequest, err)
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
			scratch := config.DefaultDynamic()
			if decodeStrict(one, &scratch) != nil {
				if strings.Contains(err.Error(), k) {
					break
				}
				return d, fmt.Errorf("%w: config: %s: %v", ErrBadRequest, k, err)
			}
		}
		return d, fmt.Errorf("%w: config: %v", ErrBadRequest, err)
	}
	if err := d.Validate(); err != nil {
		return d, fmt.Errorf("%w: config: %v", ErrBadRequest, err)
	}
	return d, nil
}

// decodeStrict decodes JSON into v, refusing unknown keys.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	v, _ := s.node.View()
	if v.ConfigRevision == 0 {
		writeText(w, http.StatusBadGateway, "no configuration in etcd")
		return
	}
	writeJSON(w, http.StatusOK, v.Config)
}

// patchConfig is PATCH /config: deep-merge the body into the config key
// and compare-and-swap it (409 when it changed meanwhile).
func (s *Server) patchConfig(w http.ResponseWriter, r *http.Request) {
	patch, err := readJSON(w, r, false)
	if err != nil {
		badBody(w, err)
		return
	}
	v, ok := s.node.View()
	if !ok || v.ConfigRevision == 0 {
		writeText(w, http.StatusServiceUnavailable, "no configuration in etcd (or etcd unreachable)")
		return
	}
	doc, err := DynamicToMap(v.Config)
	if err != nil {
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	if MergePatch(doc, patch) {
		d, err := DecodeDynamic(doc)
		if err != nil {
			writeText(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.actions.SetConfig(r.Context(), d, v.ConfigRevision); err != nil {
			s.log.Warn("PATCH /config failed", "err", err)
			writeText(w, statusFor(err), err.Error())
			return
		}
		s.log.Info("dynamic config patched", "revision", v.ConfigRevision)
		doc, err = DynamicToMap(d)
		if err != nil {
			writeText(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, doc)
}

// putConfig is PUT /config: replace the config key (502 when the write
// fails, as Patroni). The write is a compare-and-swap against the revision
// just read, so a concurrent change is never silently lost.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	body, err := readJSON(w, r, false)
	if err != nil {
		badBody(w, err)
		return
	}
	d, err := DecodeDynamic(body)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	v, _ := s.node.View()
	if err := s.actions.SetConfig(r.Context(), d, v.ConfigRevision); err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, ErrBadRequest) {
			code = http.StatusBadRequest
		}
		writeText(w, code, err.Error())
		return
	}
	s.log.Info("dynamic config replaced")
	writeJSON(w, http.StatusOK, d)
}
