// liqomatch answers, for each line of JSON on stdin ({"selector": NodeSelector, "nodes": [{name,
// labels}]}), what Liqo v1.2's NamespaceOffloading controller does with that clusterSelector
// (pkg/liqo-controller-manager/offloading/namespaceoffloading-controller/clusterselector.go,
// enforceClusterSelector and MatchVirtualNodeSelectorTerms): no terms select every cluster;
// otherwise, per virtual node in order, k8s.io/component-helpers' MatchNodeSelectorTerms at the
// version Liqo v1.2 pins (v0.35.2) on a node of that name and labels, and the first error is the
// `Invalid ClusterSelector` Event, which ends the processing with nothing selected.
//
// It prints one line per input: `SELECTED ["name", ...]` or `INVALID <error>`.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8shelper "k8s.io/component-helpers/scheduling/corev1"
)

type node struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

type input struct {
	Selector corev1.NodeSelector `json:"selector"`
	Nodes    []node              `json:"nodes"`
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for sc.Scan() {
		var in input
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			fmt.Fprintf(out, "BADINPUT %v\n", err)
			continue
		}
		selected := []string{}
		invalid := ""
		for _, n := range in.Nodes {
			if len(in.Selector.NodeSelectorTerms) == 0 {
				selected = append(selected, n.Name)
				continue
			}
			fake := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels}}
			ok, err := k8shelper.MatchNodeSelectorTerms(fake, &in.Selector)
			if err != nil {
				invalid = err.Error()
				break
			}
			if ok {
				selected = append(selected, n.Name)
			}
		}
		if invalid != "" {
			fmt.Fprintf(out, "INVALID %s\n", invalid)
			continue
		}
		b, _ := json.Marshal(selected)
		fmt.Fprintf(out, "SELECTED %s\n", b)
	}
}
