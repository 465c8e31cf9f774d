package config

import (
	"encoding/json"
	"fmt"
	"maps"
)

// Tags are per-node flags other members, HAProxy and tools read, with
// Patroni's names. Tags pgha does not interpret (datacenter: east) are
// kept in Other: published in the member key and matched by the REST
// API's ?tag_<key>=<value>.
type Tags struct {
	// NoFailover: never promote this node.
	NoFailover bool `yaml:"nofailover" json:"nofailover,omitempty"`
	// NoLoadBalance: /replica answers 503.
	NoLoadBalance bool `yaml:"noloadbalance" json:"noloadbalance,omitempty"`
	// FailoverPriority: higher wins ties; 0 never promotes.
	FailoverPriority *int `yaml:"failover_priority" json:"failover_priority,omitempty"`
	// CloneFrom: prefer this node as a pg_basebackup source.
	CloneFrom bool `yaml:"clonefrom" json:"clonefrom,omitempty"`
	// NoSync: never a synchronous standby.
	NoSync bool `yaml:"nosync" json:"nosync,omitempty"`
	// ReplicateFrom names the member this replica streams from
	// (cascading replication); the leader when unset or unavailable.
	ReplicateFrom string `yaml:"replicatefrom" json:"replicatefrom,omitempty"`
	// NoStream: the replica does not stream (no primary_conninfo); it
	// replays WAL from the archive through restore_command only.
	NoStream bool `yaml:"nostream" json:"nostream,omitempty"`
	// Other holds every other tag as written.
	Other map[string]any `yaml:",inline" json:"-"`
}

// knownTags are the JSON names of Tags' own fields.
var knownTags = map[string]bool{"nofailover": true, "noloadbalance": true, "failover_priority": true,
	"clonefrom": true, "nosync": true, "replicatefrom": true, "nostream": true}

// tagFields is Tags without its methods, for the default encoding.
type tagFields Tags

// MarshalJSON writes the tags as one flat object, Patroni's form.
func (t Tags) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(tagFields(t))
	if err != nil || len(t.Other) == 0 {
		return b, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range t.Other {
		if knownTags[k] {
			return nil, fmt.Errorf("config: tag %q is both a known tag and an other tag", k)
		}
		m[k] = v
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads a flat object: known tags into their fields, the
// rest into Other.
func (t *Tags) UnmarshalJSON(b []byte) error {
	var f tagFields
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k := range all {
		if knownTags[k] {
			delete(all, k)
		}
	}
	*t = Tags(f)
	if len(all) > 0 {
		t.Other = all
	} else {
		t.Other = nil
	}
	return nil
}

// Empty reports whether no tag is set.
func (t Tags) Empty() bool {
	return !t.NoFailover && !t.NoLoadBalance && t.FailoverPriority == nil && !t.CloneFrom && !t.NoSync &&
		t.ReplicateFrom == "" && !t.NoStream && len(t.Other) == 0
}

// Clone returns a copy that shares no map with t.
func (t Tags) Clone() Tags {
	t.Other = maps.Clone(t.Other)
	return t
}
