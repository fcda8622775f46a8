package appliance

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// console writes human progress lines to stdout and to /dev/kmsg: the
// kernel's last console= is /dev/console (stdout), but every console sees
// kmsg, so the Pi's HDMI, its UART and QEMU's PL011 all show the markers.
type console struct {
	mu   sync.Mutex
	out  io.Writer // stdout
	kmsg io.Writer // nil when /dev/kmsg could not be opened
}

// kmsgMax keeps a record under the kernel's limit (1024 with the prefix).
const kmsgMax = 900

// printf writes one line; kmsg records get a "kiln-gate: " prefix and
// level 4 (warning): u-root's init sets the console loglevel to 5, and the
// kernel prints only records below it, so a notice would never reach the
// Pi's screen (measured under QEMU: level-5 records stayed in dmesg).
func (c *console) printf(format string, args ...any) {
	line := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintln(c.out, line)
	if c.kmsg != nil {
		rec := line
		if len(rec) > kmsgMax {
			rec = rec[:kmsgMax]
		}
		// One write is one record; a failed write is not worth a fuss.
		io.WriteString(c.kmsg, "<4>kiln-gate: "+strings.ReplaceAll(rec, "\n", " ")+"\n")
	}
}
