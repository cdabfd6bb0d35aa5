;; Threads through (ice-9 threads): parallel allocation, a mutex-protected shared table.
(use-modules (ice-9 threads) (srfi srfi-1))
(define (work k)
  (let loop ((i 0) (acc '()))
    (if (= i 20000) (fold + 0 (map (lambda (p) (car p)) acc))
        (loop (+ i 1) (cons (cons (modulo (* i k) 1009) (make-string 10 #\t)) acc)))))
(format #t "par-map ~a~%" (par-map work (iota 8 1)))
(define m (make-mutex))
(define table (make-hash-table))
(define threads
  (map (lambda (t)
         (call-with-new-thread
          (lambda ()
            (do ((i 0 (+ i 1))) ((= i 5000))
              (let ((v (list t i (make-vector 3 i))))
                (with-mutex m (hash-set! table (+ (* t 100000) i) v)))))))
       (iota 4)))
(for-each join-thread threads)
(format #t "shared table ~a entries, sum ~a~%" (hash-count (const #t) table)
        (hash-fold (lambda (k v acc) (+ acc (cadr v))) 0 table))
(format #t "n-par-for-each done ~a~%"
        (let ((v (make-vector 16 0)))
          (n-par-for-each 4 (lambda (i) (vector-set! v i (work (+ i 1)))) (iota 16))
          (reduce + 0 (vector->list v))))
