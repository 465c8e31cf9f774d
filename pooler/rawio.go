package pooler

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// rawConn carries a plain TCP or Unix connection's reads and writes as
// raw system calls on its non-blocking socket, through the connection's
// syscall.RawConn: still waiting in Go's poller when the socket is not
// ready (so deadlines and Close work as before), but without telling the
// scheduler that a system call is under way. A send or receive on a
// non-blocking socket never sleeps, and the bookkeeping it saves
// (entering and leaving the syscall state, and the scheduler's monitor
// taking the processor away from a "slow" send and waking another thread
// to run it) was the largest part of the pooler's own cost per
// transaction. TLS connections keep the standard path.
type rawConn struct {
	net.Conn
	rc syscall.RawConn

	// Arguments and results of the call in progress, so that the
	// callbacks, bound once, do not allocate a closure per call.
	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// fastConn returns c wrapped in a rawConn when it is a plain TCP or Unix
// connection, else c.
func fastConn(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawConn{Conn: c, rc: rc}
	r.readFn, r.writeFn = r.read, r.write
	return r
}

// plainConn returns the connection under a rawConn.
func plainConn(c net.Conn) net.Conn {
	if r, ok := c.(*rawConn); ok {
		return r.Conn
	}
	return c
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, c.errnoError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) read(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the poller
		}
		c.rn, c.rerrno = int(r), e
		return true
	}
}

func (c *rawConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.errnoError("write", errno)
	}
	return n, nil
}

func (c *rawConn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		// MSG_NOSIGNAL: a peer that went away is an EPIPE error, not a signal.
		r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // socket buffer full: wait in the poller
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// errnoError is the *net.OpError a net.Conn returns for a failed call.
func (c *rawConn) errnoError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
