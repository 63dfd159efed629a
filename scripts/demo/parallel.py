"""The demo datasets' parallel writer: jobs run in worker processes, with a progress bar."""
from multiprocessing import get_context

from utils.utilities import progress


def run_jobs(function, jobs, num_workers, description):
    """function(job) for every job, in `num_workers` processes; the results in the jobs' order.
    Each job seeds its own generator, so the output is the same whatever the number of workers."""
    results = [None] * len(jobs)
    bar = progress(total=len(jobs), desc=description, unit="clip")
    if num_workers == 1:
        for index, job in enumerate(jobs):
            results[index] = function(job)
            bar.update()
    else:
        # forkserver: forked workers could inherit a lock held by tqdm's monitor thread.
        with get_context("forkserver").Pool(min(num_workers, len(jobs))) as pool:
            for index, result in pool.imap_unordered(_indexed, [(function, i, job) for i, job in enumerate(jobs)]):
                results[index] = result
                bar.update()
    bar.close()
    return results


def _indexed(task):
    function, index, job = task
    return index, function(job)
