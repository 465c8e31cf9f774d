package config

import (
	"fmt"
	"regexp"
	"sort"
)

// Slot is a permanent replication slot of the dynamic config's `slots`
// (Patroni's form): physical, or logical with a database and a plugin.
type Slot struct {
	Type     string `yaml:"type" json:"type"`
	Database string `yaml:"database" json:"database,omitempty"`
	Plugin   string `yaml:"plugin" json:"plugin,omitempty"`
}

// IgnoreSlot matches slots pgha must leave alone (`ignore_slots`): every
// field that is set must match.
type IgnoreSlot struct {
	Name     string `yaml:"name" json:"name,omitempty"`
	Type     string `yaml:"type" json:"type,omitempty"`
	Database string `yaml:"database" json:"database,omitempty"`
	Plugin   string `yaml:"plugin" json:"plugin,omitempty"`
}

// Matches reports whether a slot with these properties is ignored.
func (ig IgnoreSlot) Matches(name, typ, database, plugin string) bool {
	return (ig.Name == "" || ig.Name == name) && (ig.Type == "" || ig.Type == typ) &&
		(ig.Database == "" || ig.Database == database) && (ig.Plugin == "" || ig.Plugin == plugin)
}

// slotName is what Postgres accepts as a replication slot name.
var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// ValidSlotName reports whether name can name a replication slot.
func ValidSlotName(name string) bool { return slotName.MatchString(name) }

func validateSlots(p *problems, at func(string) string, d DynamicConfig) {
	names := make([]string, 0, len(d.Slots))
	for name := range d.Slots {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := d.Slots[name]
		key := at("slots." + name)
		if !ValidSlotName(name) {
			p.add(key, "%q is not a slot name: use lower-case letters, digits and _ (at most 63)", name)
		}
		switch s.Type {
		case "physical":
			if s.Database != "" || s.Plugin != "" {
				p.add(key, "a physical slot has no database or plugin")
			}
		case "logical":
			if s.Database == "" || s.Plugin == "" {
				p.add(key, "a logical slot needs a database and a plugin (e.g. pgoutput)")
			}
		default:
			p.add(key+".type", "%q is not physical or logical", s.Type)
		}
	}
	for i, ig := range d.IgnoreSlots {
		if ig == (IgnoreSlot{}) {
			p.add(at(fmt.Sprintf("ignore_slots[%d]", i)), "matches every slot: name at least one of name, type, database, plugin")
		}
		if ig.Type != "" && ig.Type != "physical" && ig.Type != "logical" {
			p.add(at(fmt.Sprintf("ignore_slots[%d].type", i)), "%q is not physical or logical", ig.Type)
		}
	}
	if d.SynchronousNodeCount < 1 {
		p.add(at("synchronous_node_count"), "%d: use 1 or more", d.SynchronousNodeCount)
	}
}
