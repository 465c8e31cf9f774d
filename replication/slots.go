package replication

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/config"
)

// slotRecord lists, one per line, the replication slots pgha created on
// this server: only those are ever dropped by pgha. It lives in the data
// directory (Postgres ignores unknown files there); a clone copies it
// but not the slots (pg_basebackup leaves pg_replslot out), so a name in
// it without a slot is harmless.
const slotRecord = "pgha.slots"

// SlotSpec is the set of slots SyncSlots makes true on this server.
type SlotSpec struct {
	// Members get one physical slot each, named SlotName(member).
	Members []string
	// Permanent are the dynamic config's slots (physical or logical).
	Permanent map[string]config.Slot
	// Ignore matches slots never created, dropped or changed.
	Ignore []config.IgnoreSlot
}

// SyncSlots creates the slots spec wants that are missing, and drops the
// slots pgha created here earlier that it no longer wants, unless they
// are in use or ignored. Slots pgha did not create (an operator's, a
// logical decoding tool's) are never dropped. Logical slots need a
// primary: on a standby they are left for after its promotion.
func (in *Instance) SyncSlots(ctx context.Context, spec SlotSpec) error {
	have, err := in.Slots(ctx)
	if err != nil {
		return err
	}
	inRecovery := false
	if err := in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	}); err != nil {
		return fmt.Errorf("replication: slots: %w", err)
	}
	ignored := func(s Slot) bool {
		for _, ig := range spec.Ignore {
			if ig.Matches(s.Name, s.Type, s.Database, s.Plugin) {
				return true
			}
		}
		return false
	}
	want := map[string]config.Slot{}
	memberSlot := map[string]bool{}
	for _, m := range spec.Members {
		want[SlotName(m)] = config.Slot{Type: "physical"}
		memberSlot[SlotName(m)] = true
	}
	for name, s := range spec.Permanent {
		if _, member := want[name]; !member {
			want[name] = s
		}
	}
	created, err := in.readSlotRecord()
	if err != nil {
		return err
	}
	record := slices.Clone(created)
	byName := map[string]Slot{}
	for _, s := range have {
		byName[s.Name] = s
	}
	var errs []error
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		w := want[name]
		if _, ok := byName[name]; ok || ignored(Slot{Name: name, Type: w.Type, Database: w.Database, Plugin: w.Plugin}) {
			if _, member := memberSlot[name]; ok && member && !slices.Contains(record, name) {
				// A member's slot made before pgha kept its record (or by
				// Patroni): it is the member's all the same.
				record = append(record, name)
			}
			continue
		}
		if w.Type == "logical" && inRecovery {
			continue
		}
		if err := in.createSlot(ctx, name, w); err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(record, name) {
			record = append(record, name)
		}
	}
	for _, name := range created {
		s, ok := byName[name]
		if _, wanted := want[name]; wanted || !ok {
			if !ok && !wanted {
				record = slices.DeleteFunc(record, func(n string) bool { return n == name })
			}
			continue
		}
		if s.Active || ignored(s) {
			continue
		}
		if err := in.DropSlot(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		in.log.Info("dropped a replication slot pgha no longer needs", "slot", name)
		record = slices.DeleteFunc(record, func(n string) bool { return n == name })
	}
	if !slices.Equal(record, created) {
		if err := in.writeSlotRecord(record); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (in *Instance) createSlot(ctx context.Context, name string, s config.Slot) error {
	if err := checkSlotName(name); err != nil {
		return err
	}
	if s.Type != "logical" {
		return in.CreateSlot(ctx, name)
	}
	cc, err := in.ConnConfig(s.Database)
	if err != nil {
		return err
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("replication: create logical slot %s: connect to database %s: %w", name, s.Database, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, $2)", name, s.Plugin); err != nil {
		return fmt.Errorf("replication: create logical slot %s (%s in %s): %w", name, s.Plugin, s.Database, err)
	}
	in.log.Info("created a logical replication slot", "slot", name, "database", s.Database, "plugin", s.Plugin)
	return nil
}

func (in *Instance) readSlotRecord() ([]string, error) {
	b, err := readDataFile(filepath.Join(in.cfg.DataDir, slotRecord))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && checkSlotName(l) == nil {
			out = append(out, l)
		}
	}
	return out, nil
}

func (in *Instance) writeSlotRecord(names []string) error {
	var b strings.Builder
	b.WriteString("# Replication slots pgha created here; pgha drops only these.\n")
	for _, n := range names {
		b.WriteString(n + "\n")
	}
	return in.writeFile(filepath.Join(in.cfg.DataDir, slotRecord), []byte(b.String()), 0o600)
}
