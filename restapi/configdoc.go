package restapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/pgha/pgha/config"
)

// MergePatch applies a Patroni config patch (config.MergePatch).
func MergePatch(doc, patch map[string]any) bool { return config.MergePatch(doc, patch) }

// DynamicToMap renders a dynamic configuration as its JSON object.
func DynamicToMap(d config.DynamicConfig) (map[string]any, error) { return config.DynamicToMap(d) }

// DecodeDynamic is config.DecodeDynamicMap with its errors wrapping
// ErrBadRequest (400).
func DecodeDynamic(m map[string]any) (config.DynamicConfig, error) {
	d, err := config.DecodeDynamicMap(m)
	if err != nil {
		return d, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return d, nil
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
