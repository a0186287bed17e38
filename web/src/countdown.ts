import { useCallback, useEffect, useState } from "react";
import { throttledHeadline, type Problem } from "./errors";

/** A throttled form's wait: `start(problem)` begins counting down the `RetryInfo` delay of a
 * throttled answer (and does nothing for any other); `secondsLeft` is what remains, 0 when the
 * form may be sent again. Forms disable their submit button until then, so a user is not
 * sent answers that alternate between "wait" and "wrong password". */
export function useRetryCountdown(): { secondsLeft: number; start: (problem: Problem) => void; reset: () => void } {
  const [deadline, setDeadline] = useState(0);
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    if (deadline <= Date.now()) return;
    const timer = setInterval(() => {
      const at = Date.now();
      setNow(at);
      if (at >= deadline) clearInterval(timer);
    }, 250);
    return () => clearInterval(timer);
  }, [deadline]);

  const start = useCallback((problem: Problem) => {
    if (!throttledHeadline(problem) || !problem.retryAfterSeconds) return;
    const at = Date.now();
    setNow(at);
    setDeadline(at + problem.retryAfterSeconds * 1000);
  }, []);
  const reset = useCallback(() => setDeadline(0), []);

  return { secondsLeft: Math.max(0, Math.ceil((deadline - now) / 1000)), start, reset };
}
