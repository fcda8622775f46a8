package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// Shutdown reasons QEMU reports in its QMP SHUTDOWN event (a subset).
const (
	ReasonGuestReset    = "guest-reset"    // the guest rebooted (-no-reboot turns it into an exit)
	ReasonGuestShutdown = "guest-shutdown" // the guest powered off
	ReasonGuestPanic    = "guest-panic"
	ReasonStopped       = "stopped"     // the lab stopped QEMU (Stop, Close, deadline)
	ReasonQEMUFailed    = "qemu-failed" // QEMU reported a dead guest (KVM internal error...) and was killed
	ReasonUnknown       = ""            // QEMU exited without a SHUTDOWN event (crash, kill)
)

// qmpTimeout bounds connecting to a starting QEMU and the handshake.
const qmpTimeout = 30 * time.Second

// qmpMessage is the part of a QMP message the lab reads.
type qmpMessage struct {
	Event string `json:"event"`
	Data  struct {
		Reason string `json:"reason"`
	} `json:"data"`
	Error *struct {
		Desc string `json:"desc"`
	} `json:"error"`
}

// dialQMP connects to QEMU's QMP socket (QEMU waits for it before
// running the guest: server=on,wait=on), retrying until the socket exists,
// QEMU exits, or the timeout passes.
func dialQMP(ctx context.Context, sock string, exited <-chan struct{}) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			return c, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("qemu exited before QMP connected: %w", err)
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp connect %s: %w", sock, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// qmpHandshake reads the greeting and enters command mode, which also lets
// QEMU start the guest.
func qmpHandshake(c net.Conn, r *bufio.Reader) error {
	if err := c.SetDeadline(time.Now().Add(qmpTimeout)); err != nil {
		return err
	}
	if _, err := r.ReadBytes('\n'); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	if _, err := c.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		return fmt.Errorf("qmp capabilities: %w", err)
	}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("qmp capabilities: %w", err)
		}
		var m qmpMessage
		if json.Unmarshal(line, &m) != nil || m.Event != "" {
			continue
		}
		if m.Error != nil {
			return fmt.Errorf("qmp capabilities: %s", m.Error.Desc)
		}
		return c.SetDeadline(time.Time{})
	}
}

// watchShutdown reads QMP events until the connection ends (QEMU exited)
// and then sends the last SHUTDOWN reason seen, or ReasonUnknown.
func watchShutdown(c net.Conn, r *bufio.Reader) <-chan string {
	ch := make(chan string, 1)
	go func() {
		defer c.Close()
		reason := ReasonUnknown
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				ch <- reason
				return
			}
			var m qmpMessage
			if json.Unmarshal(line, &m) == nil && m.Event == "SHUTDOWN" {
				reason = m.Data.Reason
			}
		}
	}()
	return ch
}
