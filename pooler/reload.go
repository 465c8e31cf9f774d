package pooler

import (
	"reflect"
	"slices"
	"strings"

	"github.com/pgha/pgha/config"
)

// Reload applies a reloaded pooler section, as PgBouncer's RELOAD does for
// what pgha can change while clients stay connected: the user list is
// read again from auth_file (which may now name another file) and the
// hba rules replaced; a failure keeps the previous ones. It returns the
// other keys that changed, which take effect at the next daemon start.
func (p *Pooler) Reload(next config.Pooler) ([]string, error) {
	p.mu.Lock()
	prev := p.cfg
	oldFile, oldHBA := prev.AuthFile, prev.HBA
	p.cfg.AuthFile, p.cfg.HBA = next.AuthFile, slices.Clone(next.HBA)
	p.mu.Unlock()
	if err := p.loadAuth(); err != nil {
		p.mu.Lock()
		p.cfg.AuthFile, p.cfg.HBA = oldFile, oldHBA
		p.mu.Unlock()
		return nil, err
	}
	prev.AuthFile, prev.HBA = next.AuthFile, next.HBA
	return changedPoolerKeys(prev, next), nil
}

// changedPoolerKeys lists the pooler.* keys whose values differ.
func changedPoolerKeys(a, b config.Pooler) []string {
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	for i := 0; i < t.NumField(); i++ {
		if reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			name = strings.ToLower(t.Field(i).Name)
		}
		out = append(out, "pooler."+name)
	}
	return out
}
