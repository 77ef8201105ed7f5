// Command dra-cel evaluates DeviceClass/request CEL selectors against devices with the
// Kubernetes scheduler's own DRA CEL code (k8s.io/dynamic-resource-allocation/cel), so a test
// can ask which devices a selector users wrote for DRANET picks from our slices, and from
// DRANET's.
//
// Input (stdin): {"driver": "dra.net", "devices": {"<name>": {<attributes as in a slice>}},
// "selectors": ["<expression>", ...]}. Output (stdout): {"<expression>": ["<name>", ...]},
// names sorted. Exit 1 naming the expression that fails to compile or evaluate.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	resourceapi "k8s.io/api/resource/v1"
	dracel "k8s.io/dynamic-resource-allocation/cel"
)

type input struct {
	Driver    string                                                               `json:"driver"`
	Devices   map[string]map[resourceapi.QualifiedName]resourceapi.DeviceAttribute `json:"devices"`
	Selectors []string                                                             `json:"selectors"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "dra-cel: input: %v\n", err)
		os.Exit(1)
	}
	compiler := dracel.GetCompiler(dracel.Features{EnableListTypeAttributes: true})
	out := map[string][]string{}
	for _, expression := range in.Selectors {
		compiled := compiler.CompileCELExpression(expression, dracel.Options{})
		if compiled.Error != nil {
			fmt.Fprintf(os.Stderr, "dra-cel: %q: %v\n", expression, compiled.Error)
			os.Exit(1)
		}
		matched := []string{}
		for name, attributes := range in.Devices {
			ok, _, err := compiled.DeviceMatches(context.Background(), dracel.Device{Driver: in.Driver, Attributes: attributes})
			if err != nil {
				fmt.Fprintf(os.Stderr, "dra-cel: %q on device %s: %v\n", expression, name, err)
				os.Exit(1)
			}
			if ok {
				matched = append(matched, name)
			}
		}
		sort.Strings(matched)
		out[expression] = matched
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "dra-cel: %v\n", err)
		os.Exit(1)
	}
}
