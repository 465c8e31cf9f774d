package convert

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pgha/pgha/config"
)

// slots converts bootstrap.dcs.slots, Patroni's permanent replication
// slots. Patroni reads an empty value as a physical slot and a mapping
// without a type as logical when it names a database and a plugin,
// physical otherwise; pgha wants the type written, so it is.
func (c *conv) slots(d *omap, m map[string]any) {
	for _, name := range sortedKeys(m) {
		v, _ := pop(m, name)
		path := "bootstrap.dcs.slots." + name
		if !config.ValidSlotName(name) {
			c.note(path, "%q is not a slot name (lower-case letters, digits and _, at most 63; Patroni ignores it too): left out", name)
			continue
		}
		if empty(v) {
			d.sub("slots").sub(name).set("type", "physical")
			continue
		}
		s, ok := asMap(v)
		if !ok {
			c.note(path, "want a mapping such as {type: physical}, got %q (Patroni ignores it too): left out", scalar(v))
			continue
		}
		typ, _ := pop(s, "type")
		db, _ := pop(s, "database")
		plugin, _ := pop(s, "plugin")
		t := scalar(typ)
		if typ == nil {
			t = "physical"
			if scalar(db) != "" && scalar(plugin) != "" {
				t = "logical"
			}
		}
		switch t {
		case "physical":
			if scalar(db) != "" || scalar(plugin) != "" {
				c.note(path, "a physical slot has no database or plugin: wrote the slot without them")
			}
			d.sub("slots").sub(name).set("type", "physical")
		case "logical":
			if scalar(db) == "" || scalar(plugin) == "" {
				c.note(path, "a logical slot needs a database and a plugin (Patroni does not create it either): left out")
				continue
			}
			o := d.sub("slots").sub(name)
			o.set("type", "logical")
			o.set("database", scalar(db))
			o.set("plugin", scalar(plugin))
		default:
			c.note(path+".type", "%q is not physical or logical: slot left out", t)
			continue
		}
		c.leftovers(path, s)
	}
}

// ignoreSlots converts bootstrap.dcs.ignore_slots, a list of matchers.
func (c *conv) ignoreSlots(d *omap, v any) {
	l, ok := v.([]any)
	if !ok {
		c.note("bootstrap.dcs.ignore_slots", "want a list of {name, type, database, plugin} matchers: left out")
		return
	}
	var out []map[string]string
	for i, x := range l {
		path := fmt.Sprintf("bootstrap.dcs.ignore_slots[%d]", i)
		m, ok := asMap(x)
		if !ok {
			c.note(path, "want a mapping of name, type, database, plugin: left out")
			continue
		}
		ig := map[string]string{}
		for _, k := range []string{"name", "type", "database", "plugin"} {
			if y, ok := pop(m, k); ok && scalar(y) != "" {
				ig[k] = scalar(y)
			}
		}
		c.leftovers(path, m)
		if t, ok := ig["type"]; ok && t != "physical" && t != "logical" {
			c.note(path+".type", "%q is not physical or logical (the matcher matches no slot): left out", t)
			continue
		}
		if len(ig) == 0 {
			c.note(path, "matches every slot, which pgha refuses: left out; name the slots to leave alone")
			continue
		}
		out = append(out, ig)
	}
	if len(out) > 0 {
		d.set("ignore_slots", out)
	}
}

// empty reports whether a YAML value is Patroni-falsy: null, 0, "", an
// empty mapping.
func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(x) == 0
	case bool:
		return !x
	case int:
		return x == 0
	case float64:
		return x == 0
	case string:
		return x == ""
	}
	return false
}

// intValue reads an integer written as a YAML number or as text ("2",
// from a PATRONI_* variable or a quoted value).
func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		return n, err == nil
	}
	return 0, false
}
