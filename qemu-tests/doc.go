// Package qemutests holds kiln's end-to-end tests: ordinary `go test`
// tests that boot machines under QEMU on a lab network built by package
// lab (network namespace, bridge, taps, pcap), with hard deadlines and
// markers read from the serial console.
//
// They need root, qemu-system-x86, ovmf, ipxe, dnsmasq-base and tcpdump:
// without them they skip, except under CI=true where they fail. -short
// skips them. Serial logs, dnsmasq's log and a pcap of the bridge are kept
// per test under $KILN_TEST_OUTPUT/<test>/ or qemu-tests/test-output/<test>/.
package qemutests
