#include "efadra/observe/api_request_observer.h"

namespace efadra::observe {

void ApiRequestObserver::OnRequest(std::string_view verb, int code,
                                   std::chrono::microseconds latency) {
  metrics_.RecordApiRequest(verb, code, latency);
}

}  // namespace efadra::observe
