package pooler

import "errors"

// serveAdmin runs the admin console session for c.
func (p *Pooler) serveAdmin(c *client) error {
	return errors.New("pooler: admin console not implemented yet")
}
