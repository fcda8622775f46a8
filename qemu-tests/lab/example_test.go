package lab_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// A rehearsal in outline: the lab's LAN with an ISP box, kiln's gate
// service listening on the gate's address inside the lab, one VM per
// machine, markers awaited on each serial console.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // the hard deadline
	defer cancel()
	n, err := lab.NewNetwork(ctx, lab.NetworkConfig{
		OutDir:   "out/rehearse",
		GateAddr: "192.168.1.10/24",
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close() // kills every QEMU and helper, deletes the namespaces
	if _, err := n.StartISP(ctx, lab.ISPConfig{}); err != nil {
		fmt.Println(err)
		return
	}
	// The gate: either a command inside the lab...
	gate := n.Command("kiln", "gate", "--bundle", "out/bundle")
	if _, err := n.Start("gate", gate); err != nil {
		fmt.Println(err)
		return
	}
	// ...or, in-process, sockets opened inside n.Do(func() error { ... }).

	var p plan.Plan // from the bundle's plan.json
	for _, m := range p.Machines {
		if m.Arch != "amd64" {
			continue
		}
		vm, err := n.NewVM(ctx, lab.ConfigFor(p.Lab, m))
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := vm.Start(ctx); err != nil { // relaunched after each guest reset
			fmt.Println(err)
			return
		}
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(`^KILN-BOOTED host=`+regexp.QuoteMeta(m.Hostname)+` `)); err != nil {
			fmt.Println(err, "\n", n.Diagnose(40))
			return
		}
		fmt.Println(m.Name, "booted after", vm.Boots(), "boots")
	}
}
