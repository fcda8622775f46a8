package lab

import (
	"regexp"
	"strings"
	"time"
)

// qemuFatal matches what QEMU writes to stderr when the guest can no
// longer run although QEMU itself keeps going: a KVM that cannot execute
// the firmware (kvm-pvm: "KVM internal error. Suberror: 1", "emulation
// failure"), after which QEMU hangs instead of exiting.
var qemuFatal = regexp.MustCompile(`KVM internal error|emulation failure|kvm run failed|failed to initialize kvm`)

// watchFatal follows QEMU's log from offset from until a line matches
// qemuFatal, which it sends, or until exited is closed (after a last read,
// so a line written just before the exit is seen).
func watchFatal(path string, from int64, exited <-chan struct{}) <-chan string {
	ch := make(chan string, 1)
	go func() {
		s := &logScanner{path: path, off: from}
		for {
			done := closed(exited)
			lines, _ := s.lines(done)
			for _, l := range lines {
				if qemuFatal.MatchString(l) {
					ch <- strings.TrimSpace(l)
					return
				}
			}
			if done {
				return
			}
			select {
			case <-exited:
			case <-time.After(pollInterval):
			}
		}
	}()
	return ch
}

// qemuSaid is what QEMU wrote to its log since offset from, for an error
// message: its fatal line if there is one, else its last few lines, on one
// line.
func qemuSaid(path string, from int64) string {
	s := &logScanner{path: path, off: from}
	lines, err := s.lines(true)
	if err != nil {
		return "(qemu log: " + err.Error() + ")"
	}
	var kept []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if qemuFatal.MatchString(l) {
			return l
		}
		kept = append(kept, l)
	}
	if len(kept) == 0 {
		return "(nothing)"
	}
	if len(kept) > 5 {
		kept = kept[len(kept)-5:]
	}
	return strings.Join(kept, " | ")
}
