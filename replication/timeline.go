package replication

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// SwitchPoint reads, on a server that was promoted, where its previous
// timeline ended: the last line of the current timeline's history file
// (pg_wal/<TLI>.history, "<prev tli>\t<lsn>\t<reason>"). A replica whose
// position on that previous timeline is beyond it has diverged.
func (in *Instance) SwitchPoint(ctx context.Context) (timeline int64, lsn LSN, err error) {
	var content string
	err = in.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var walFile string
		if err := c.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&walFile); err != nil {
			return err
		}
		if len(walFile) < 8 {
			return fmt.Errorf("unexpected WAL file name %q", walFile)
		}
		return c.QueryRow(ctx, "SELECT pg_read_file('pg_wal/' || $1 || '.history')", walFile[:8]).Scan(&content)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("replication: read the timeline history: %w", err)
	}
	return parseSwitchPoint(content)
}

// parseSwitchPoint reads the last entry of a timeline history file.
func parseSwitchPoint(content string) (int64, LSN, error) {
	lines := strings.Split(strings.TrimSpace(content), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		tl, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("replication: timeline history line %q: %w", lines[i], err)
		}
		lsn, err := ParseLSN(f[1])
		if err != nil {
			return 0, 0, fmt.Errorf("replication: timeline history line %q: %w", lines[i], err)
		}
		return tl, lsn, nil
	}
	return 0, 0, fmt.Errorf("replication: empty timeline history")
}
