// binarytrees.go — perf/binarytrees.c in Go, for perf/pause-compare: the same shape (a
// stretch tree, a long-lived tree of depth max, then 2^(max-d+4) trees of depth d for
// d = 4, 6, ..., max, the depths shared between THREADS worker goroutines that each take
// the next depth not yet taken) and exactly the same stdout, so the runs can be compared.
// Run with GOMAXPROCS=2 and GODEBUG=gctrace=1 to see Go's pauses.
//
// usage: binarytrees [max_depth=20] [threads=1]
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const minDepth = 4

type node struct{ left, right *node }

func bottomUpTree(depth int) *node {
	if depth > 0 {
		return &node{bottomUpTree(depth - 1), bottomUpTree(depth - 1)}
	}
	return &node{}
}

// check counts the nodes; an inner node with one child is -1e6, as in the C program.
func check(n *node) int64 {
	c := int64(1)
	for n.left != nil {
		if n.right == nil {
			return -1000000
		}
		c += 1 + check(n.left)
		n = n.right
	}
	if n.right != nil {
		return -1000000
	}
	return c
}

func main() {
	n, threads := 20, 1
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		threads, _ = strconv.Atoi(os.Args[2])
	}
	if n < 0 || n > 28 || threads < 1 || threads > 2 {
		fmt.Fprintln(os.Stderr, "usage: binarytrees [max_depth=20 (0..28)] [threads=1 (1..2)]")
		os.Exit(2)
	}
	maxDepth := n
	if maxDepth < minDepth+2 {
		maxDepth = minDepth + 2
	}
	ndepths := (maxDepth-minDepth)/2 + 1
	t0 := time.Now()

	stretch := maxDepth + 1
	fmt.Printf("stretch tree of depth %d\t check: %d\n", stretch, check(bottomUpTree(stretch)))
	longLived := bottomUpTree(maxDepth)

	results := make([]int64, ndepths)
	iterations := make([]int64, ndepths)
	var next int64 = -1
	worker := func() {
		for {
			k := int(atomic.AddInt64(&next, 1))
			if k >= ndepths {
				return
			}
			d := minDepth + 2*k
			iters := int64(1) << (maxDepth - d + minDepth)
			var sum int64
			for i := int64(0); i < iters; i++ {
				sum += check(bottomUpTree(d))
			}
			iterations[k] = iters
			results[k] = sum
		}
	}
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func() { defer wg.Done(); worker() }()
	}
	wg.Wait()

	for k := 0; k < ndepths; k++ {
		fmt.Printf("%d\t trees of depth %d\t check: %d\n", iterations[k], minDepth+2*k, results[k])
	}
	fmt.Printf("long lived tree of depth %d\t check: %d\n", maxDepth, check(longLived))
	fmt.Fprintf(os.Stderr, "binarytrees-go depth %d threads %d: %.3f s\n", maxDepth, threads,
		time.Since(t0).Seconds())
}
